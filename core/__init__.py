"""longrecipe: efficient context extension (LongRecipe) and a long-context evaluation harness."""

__version__ = "0.1.0"
