"""`lepton-ci pull`: a version's model files out of its image, checked, with no container engine.

- operation.py  which version and image, the checks of labels and signature, the folder
- unpack.py     the model layer's tar, streamed into a staging folder, each file hashed

`lepton_ci.pull("digits#prod")` is `operation.pull`: batch jobs and notebooks load "what is in
prod" as `lepton-ci pull digits#prod --out DIR` does. The folder is not called `pull/`: a
sub-package of that name would replace the function `lepton_ci.pull` once imported.
"""
