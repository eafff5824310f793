"""cloudseed.proxy"""
