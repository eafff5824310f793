"""cloudseed.control"""
