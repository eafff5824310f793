"""cloudseed.cli"""
