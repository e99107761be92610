"""Stage package (see README, data flow)."""
