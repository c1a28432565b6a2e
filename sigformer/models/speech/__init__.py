"""Speech models: separation and multichannel enhancement."""
