"""The one exception type of the dataset code: a one-line message naming the file and the field."""


class DatasetError(ValueError):
    """Malformed dataset input (image, mask, label, JSON) or a refused write.

    The message is one line of the form `<file>: <field>: <problem>` so that a user can go
    straight to the offending file.
    """
