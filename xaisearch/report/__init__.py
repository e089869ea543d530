"""Reports: plotly figures, heatmap images and the HTML page of a study."""
