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
    # gen-efficientnet 1.0.2 models (GEFFNET below), counted on the instantiated model: its published counts.
    "lite0": 4_652_008,
    "lite1": 5_416_680,
    "lite2": 6_092_072,
    "lite3": 8_197_096,
    "lite4": 13_006_568,
    "es": 5_438_392,
    "em": 6_899_496,
    "el": 10_589_712,
    "cc_b0_4e": 13_314_116,
    "cc_b0_8e": 24_013_284,
    "cc_b1_8e": 39_715_968,
    "mixnet_s": 4_134_606,
    "mixnet_m": 5_014_382,
    "mixnet_l": 7_329_252,
    "mixnet_xl": 11_896_768,
    "mnasnet_a1": 3_887_038,
    "mnasnet_b1": 4_383_312,
    "mnasnet_small": 2_030_264,
    "mnasnet_050": 2_218_512,
    "mnasnet_075": 3_170_208,
    "mnasnet_100": 4_383_312,
    "mnasnet_140": 7_115_728,
    "mobilenetv2_100": 3_504_872,
    "mobilenetv2_140": 6_108_776,
    "mobilenetv2_110d": 4_516_520,
    "mobilenetv2_120d": 5_831_144,
    "mobilenetv3_large_100": 5_483_032,
    "mobilenetv3_large_minimal_100": 3_924_288,
    "mobilenetv3_small_100": 2_542_856,
    "mobilenetv3_small_minimal_100": 2_044_736,
    "fbnetc_100": 5_572_200,
    "spnasnet_100": 4_421_616,
}

#: The gen-efficientnet 1.0.2 (geffnet) model each spec reproduces, with its MACs at the spec's resolution,
#: counted with torch.utils.flop_counter on the geffnet model (FLOPs / 2; CondConv: geffnet's kernel-mixing
#: matmul plus its per-sample conv).
GEFFNET = {
    "lite0": ("efficientnet_lite0", 385_187_552),
    "lite1": ("efficientnet_lite1", 600_185_232),
    "lite2": ("efficientnet_lite2", 859_736_272),
    "lite3": ("efficientnet_lite3", 1_383_321_872),
    "lite4": ("efficientnet_lite4", 2_553_034_336),
    "es": ("efficientnet_es", 2_352_307_840),
    "em": ("efficientnet_em", 3_660_284_288),
    "el": ("efficientnet_el", 9_661_894_048),
    "cc_b0_4e": ("efficientnet_cc_b0_4e", 396_513_888),
    "cc_b0_8e": ("efficientnet_cc_b0_8e", 407_213_024),
    "cc_b1_8e": ("efficientnet_cc_b1_8e", 723_282_704),
    "mixnet_s": ("mixnet_s", 239_173_360),
    "mixnet_m": ("mixnet_m", 339_172_672),
    "mixnet_l": ("mixnet_l", 555_251_792),
    "mixnet_xl": ("mixnet_xl", 904_010_880),
    "mnasnet_a1": ("mnasnet_a1", 311_579_072),
    "mnasnet_b1": ("mnasnet_b1", 314_415_872),
    "mnasnet_small": ("mnasnet_small", 68_339_184),
    "mnasnet_050": ("mnasnet_050", 104_455_968),
    "mnasnet_075": ("mnasnet_075", 215_493_104),
    "mnasnet_100": ("mnasnet_100", 314_415_872),
    "mnasnet_140": ("mnasnet_140", 588_799_408),
    "mobilenetv2_100": ("mobilenetv2_100", 300_774_272),
    "mobilenetv2_140": ("mobilenetv2_140", 582_195_824),
    "mobilenetv2_110d": ("mobilenetv2_110d", 430_516_080),
    "mobilenetv2_120d": ("mobilenetv2_120d", 668_857_568),
    "mobilenetv3_large_100": ("mobilenetv3_large_100", 216_589_760),
    "mobilenetv3_large_minimal_100": ("mobilenetv3_large_minimal_100", 209_136_704),
    "mobilenetv3_small_100": ("mobilenetv3_small_100", 56_510_400),
    "mobilenetv3_small_minimal_100": ("mobilenetv3_small_minimal_100", 52_288_448),
    "fbnetc_100": ("fbnetc_100", 384_960_160),
    "spnasnet_100": ("spnasnet_100", 333_467_072),
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
