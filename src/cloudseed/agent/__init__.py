"""cloudseed.agent"""
