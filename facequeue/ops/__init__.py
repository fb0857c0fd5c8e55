"""Operator tools: review report, dataset statistics, doctor."""
