"""cloudseed.render"""
