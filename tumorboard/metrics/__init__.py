"""Metrics: referral-to-consensus times, window compliance, concordance, meeting fill and quorum,
invite answers; server-rendered SVG plots and a CSV export."""
