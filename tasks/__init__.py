"""Model-free task generators and scorers: they need a tokenizer to fit lengths and strings to score."""
