"""cloudseed.store"""
