"""OCF resource agents for highly available OpenStack control planes."""
