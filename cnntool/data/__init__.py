"""Datasets: the data that can be had offline here (builtin), and the readers for user data."""
