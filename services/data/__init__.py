"""The data service: column data sources, durable appends, downsampling and aggregation."""
