"""Tests of turborec.compress and the compact tables of turborec.models.compact."""
