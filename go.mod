module github.com/fmoe/fmoe

go 1.26

require (
	golang.org/x/sys v0.46.0
	golang.org/x/text v0.44.0
)
