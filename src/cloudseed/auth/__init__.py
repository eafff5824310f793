"""cloudseed.auth"""
