"""Published numbers of the papers oodbench reproduces, as CSV files with a manifest (installed as
``oodbench.references``); see README.md here for what each file holds."""
