"""envcap/emit"""
