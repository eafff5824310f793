"""cloudseed.http"""
