// Renders an Ollama TEMPLATE with Go's text/template, the engine Ollama itself uses.
// stdin: {"template": "...", "system": "...", "messages": [{"role": "...", "content": "..."}]}
package main

import (
	"encoding/json"
	"os"
	"text/template"
)

type message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

type request struct {
	Template string    `json:"template"`
	System   string    `json:"system"`
	Messages []message `json:"messages"`
}

func main() {
	var r request
	if err := json.NewDecoder(os.Stdin).Decode(&r); err != nil {
		panic(err)
	}
	t := template.Must(template.New("ollama").Parse(r.Template))
	if err := t.Execute(os.Stdout, r); err != nil {
		panic(err)
	}
}
