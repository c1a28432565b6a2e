"""RF models: OFDM channel estimation and modulation recognition."""
