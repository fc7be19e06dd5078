// Plotline embed script: this document cannot be shown here.
console.error($message);
