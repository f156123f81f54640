"""relax"""
