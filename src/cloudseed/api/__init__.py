"""cloudseed.api"""
