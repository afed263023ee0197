"""Numbers produced by peer tools, with the exact call and version that produced them."""
