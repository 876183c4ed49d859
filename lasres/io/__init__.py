"""Reading and writing files safely: the floor under the weight formats and
the dataset readers.

:mod:`.atomic`
    Files written whole or not at all (a temporary file renamed into place).
:mod:`.safepickle`
    The restricted unpickler (only the types weight files and data batches
    hold, every object charged against a budget).
:mod:`.sizecheck`
    Sizes checked before anything is allocated; regular files only; HDF5
    datasets and attributes checked before they are read.
:mod:`.isolation`
    Untrusted HDF5 files parsed in a forked reader under a timeout and a
    memory cap.
"""
