"""Referrals from partner agencies and staff, and the MASH triage queue (see service.py)."""
