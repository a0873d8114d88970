"""The shipped spec library (one file per published variant). A package only so installs carry it."""
