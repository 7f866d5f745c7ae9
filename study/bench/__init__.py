"""`study bench ...`: commands that print the speed figures the issues ask for. Speed lives here, not in timed tests."""
