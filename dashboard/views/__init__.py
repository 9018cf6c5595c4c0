"""The dashboard's pages, one module per area. Each view: authorise (through access.py), validate
with a form, call a model method or a stage, render or redirect."""
