module smuxbench

go 1.19

require github.com/xtaci/smux v1.5.16

replace github.com/xtaci/smux => /usr/share/gocode/src/github.com/xtaci/smux
