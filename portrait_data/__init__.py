"""Portrait datasets: the 31-float label format, the image/mask reader, conversion and writing.

    from portrait_data.portrait import PortraitDataset    # images + masks + labels (a torch Dataset)
    from portrait_data.labels import split_label, mirror_label, validate_labels
    from portrait_data.errors import DatasetError          # every malformed input raises this
The conversion CLI is the top-level dataset_tool.py; the format is described in docs/dataset.md.
"""
