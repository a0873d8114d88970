"""Published reference figures (../shared/reference/published.md), transcribed once for the tests.

These are facts about the original networks, not outputs of specdsl.
"""

from __future__ import annotations

#: Shipped specs that are not published variants (nothing to compare): `digits_tiny` trains in a CPU minute.
UNPUBLISHED = {"digits_tiny"}

#: Trainable parameters (torch, keras trainable_weights and timm agree).
PARAMS = {
    "b0": 5_288_548,
    "b1": 7_794_184,
    "b2": 9_109_994,
    "b3": 12_233_232,
    "b4": 19_341_616,
    "b5": 30_389_784,
    "b6": 43_040_704,
    "b7": 66_347_960,
    "b8": 87_413_142,
    "l2": 480_309_308,
    "v2_b0": 7_139_704,
    "v2_b1": 8_141_052,
    "v2_b2": 10_096_086,
    "v2_b3": 14_358_406,
    "v2_s": 21_458_488,
    "v2_m": 54_139_356,
    "v2_l": 118_515_272,
    "v2_xl": 208_119_808,
}

#: Blocks after depth scaling, where published.
BLOCKS = {"b0": 16, "b7": 55, "v2_s": 40, "v2_m": 57, "v2_l": 79, "v2_xl": 100}

#: MACs at the eval resolution, counted with torch.utils.flop_counter on the references.
MACS = {
    "b0": 0.3858e9,
    "b1": 0.6868e9,
    "b2": 0.9936e9,
    "b3": 1.8271e9,
    "b4": 4.3938e9,
    "b5": 10.266e9,
    "b6": 19.068e9,
    "b7": 37.746e9,
    "b8": 62.598e9,
    "l2": 475.70e9,
    "v2_b0": 0.718086e9,
    "v2_b1": 1.196819e9,
    "v2_b2": 1.697543e9,
    "v2_b3": 3.011459e9,
    "v2_s": 8.365617e9,
    "v2_m": 24.582460e9,
    "v2_l": 56.079699e9,
}

#: V1 variant table: (width, depth, resolution, dropout).
V1_TABLE = {
    "b1": (1.0, 1.1, 240, 0.2),
    "b2": (1.1, 1.2, 260, 0.3),
    "b3": (1.2, 1.4, 300, 0.3),
    "b4": (1.4, 1.8, 380, 0.4),
    "b5": (1.6, 2.2, 456, 0.4),
    "b6": (1.8, 2.6, 528, 0.5),
    "b7": (2.0, 3.1, 600, 0.5),
}

#: V2 variant table: (width, depth, train size, eval size, dropout).
V2_TABLE = {
    "v2_b0": (1.0, 1.0, 192, 224, 0.2),
    "v2_b1": (1.0, 1.1, 192, 240, 0.2),
    "v2_b2": (1.1, 1.2, 208, 260, 0.3),
    "v2_b3": (1.2, 1.4, 240, 300, 0.3),
    "v2_s": (1.0, 1.0, 300, 384, 0.2),
    "v2_m": (1.0, 1.0, 384, 480, 0.3),
    "v2_l": (1.0, 1.0, 384, 480, 0.4),
    "v2_xl": (1.0, 1.0, 384, 512, 0.4),
}

#: Block strings from the published tables, by dialect.
V1_TPU = [
    "r1_k3_s11_e1_i32_o16_se0.25",
    "r2_k3_s22_e6_i16_o24_se0.25",
    "r2_k5_s22_e6_i24_o40_se0.25",
    "r3_k3_s22_e6_i40_o80_se0.25",
    "r3_k5_s11_e6_i80_o112_se0.25",
    "r4_k5_s22_e6_i112_o192_se0.25",
    "r1_k3_s11_e6_i192_o320_se0.25",
]
V2_AUTOML = {
    "base": "r1_k3_s1_e1_i32_o16_c1 r2_k3_s2_e4_i16_o32_c1 r2_k3_s2_e4_i32_o48_c1 "
    "r3_k3_s2_e4_i48_o96_se0.25 r5_k3_s1_e6_i96_o112_se0.25 r8_k3_s2_e6_i112_o192_se0.25",
    "s": "r2_k3_s1_e1_i24_o24_c1 r4_k3_s2_e4_i24_o48_c1 r4_k3_s2_e4_i48_o64_c1 "
    "r6_k3_s2_e4_i64_o128_se0.25 r9_k3_s1_e6_i128_o160_se0.25 r15_k3_s2_e6_i160_o256_se0.25",
    "m": "r3_k3_s1_e1_i24_o24_c1 r5_k3_s2_e4_i24_o48_c1 r5_k3_s2_e4_i48_o80_c1 "
    "r7_k3_s2_e4_i80_o160_se0.25 r14_k3_s1_e6_i160_o176_se0.25 r18_k3_s2_e6_i176_o304_se0.25 "
    "r5_k3_s1_e6_i304_o512_se0.25",
    "l": "r4_k3_s1_e1_i32_o32_c1 r7_k3_s2_e4_i32_o64_c1 r7_k3_s2_e4_i64_o96_c1 "
    "r10_k3_s2_e4_i96_o192_se0.25 r19_k3_s1_e6_i192_o224_se0.25 r25_k3_s2_e6_i224_o384_se0.25 "
    "r7_k3_s1_e6_i384_o640_se0.25",
    "xl": "r4_k3_s1_e1_i32_o32_c1 r8_k3_s2_e4_i32_o64_c1 r8_k3_s2_e4_i64_o96_c1 "
    "r16_k3_s2_e4_i96_o192_se0.25 r24_k3_s1_e6_i192_o256_se0.25 r32_k3_s2_e6_i256_o512_se0.25 "
    "r8_k3_s1_e6_i512_o640_se0.25",
}
#: timm's definitions of the same networks (timm/models/efficientnet.py arch_def).
V1_B0_TIMM = [
    "ds_r1_k3_s1_e1_c16_se0.25",
    "ir_r2_k3_s2_e6_c24_se0.25",
    "ir_r2_k5_s2_e6_c40_se0.25",
    "ir_r3_k3_s2_e6_c80_se0.25",
    "ir_r3_k5_s1_e6_c112_se0.25",
    "ir_r4_k5_s2_e6_c192_se0.25",
    "ir_r1_k3_s1_e6_c320_se0.25",
]
V2_S_TIMM = [
    "cn_r2_k3_s1_e1_c24_skip",
    "er_r4_k3_s2_e4_c48",
    "er_r4_k3_s2_e4_c64",
    "ir_r6_k3_s2_e4_c128_se0.25",
    "ir_r9_k3_s1_e6_c160_se0.25",
    "ir_r15_k3_s2_e6_c256_se0.25",
]
