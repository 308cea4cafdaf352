"""Feed ingestion: declarative feed definitions, standardisation, quarantine and batches."""
