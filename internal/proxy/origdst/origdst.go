package origdst
