"""Results files -> pandas -> paper-style tables and plots, and the CI regression gate.

This package reads results files only and never imports torch: it runs anywhere pandas and matplotlib do.
"""
