"""cloudseed.configdrive"""
