"""Entry points kept at the repository root: ``python -m experiments.<name>`` runs ``aejax.experiments.<name>``.

Not installed with the package (``pip install .`` installs ``aejax`` alone); from
anywhere, ``aejax run <name>`` does the same.
"""
