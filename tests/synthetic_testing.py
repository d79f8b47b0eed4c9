"""The built-in synthetic portrait set written for tests: one helper for every test that needs a dataset."""
from portrait_data import sample_writer


def synthetic_zips(folder, count: int, resolution: int, seed: int = 0):
    """Write `count` synthetic portraits at `resolution` into `folder`; returns (images.zip, masks.zip) paths."""
    images, masks = sample_writer.synthetic_destinations(str(folder))
    sample_writer.write_synthetic(count, resolution, seed, 'uniform', images, masks, progress=False)
    return images, masks
