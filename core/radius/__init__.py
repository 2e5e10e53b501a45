"""radius"""
