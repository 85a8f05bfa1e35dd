"""Repository tools that sit above every package (they read all three daemons): not installed with the project."""
