"""Reports: paper-style tables from store records (terminal now; HTML, LaTeX and plots build on them)."""
