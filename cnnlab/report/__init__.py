"""Reports: self-contained HTML (images embedded) and Markdown, made from run folders only."""
