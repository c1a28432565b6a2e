"""Radio-frequency signal processing: OFDM channel estimation, modulation recognition."""
