"""openstack-ha-backup: scheduled full and differential mariabackup of the replicated database."""
