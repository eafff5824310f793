"""libvirt integration: domains and networks into the inventory."""
