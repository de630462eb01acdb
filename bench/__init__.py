"""`make bench`: the serving benchmark."""
