"""envcap/workload"""
