"""What the regflow services share."""
