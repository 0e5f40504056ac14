"""envcap/lock"""
