"""cloudseed.dataplane"""
